"""Cross-compile a generated C library for Cortex-M, size the image, run it in QEMU.

:func:`build_firmware` compiles the c-source export (:mod:`tinylarge.compress.csource`)
with the Arm GNU toolchain (``arm-none-eabi-gcc``, Debian's gcc-arm-none-eabi
with newlib; ``-Os``, function sections and ``--gc-sections``) together with a
minimal startup (vector table, reset handler, semihosting) and a harness that
classifies inputs read from the host, and links it for an ARM MPS2 board
(code and constants from 0x00000000, RAM from 0x20000000). Flash and RAM are
read from the linked ELF's sections (``arm-none-eabi-size -A``): flash =
``.text`` + ``.rodata`` + ``.ARM.exidx`` + ``.data`` (its load image); RAM =
``.data`` + ``.bss`` + ``.stack`` (the reserved stack, :data:`STACK_BYTES`).

:func:`run_qemu` runs the image on QEMU's MPS2 board of its core
(``mps2-an386`` for Cortex-M4, ``mps2-an500`` for Cortex-M7) with
semihosting: the harness reads ``tl_inputs.bin`` and writes
``tl_outputs.bin`` in a scratch directory. Cortex-M33 is built and sized, not
run (QEMU's AN505 has another memory map).

The toolchain and QEMU are optional system packages (``apt-get install
gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm``);
:func:`missing_tools` says which are absent.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tinylarge.compress.csource import CSource
from tinylarge.errors import TinylargeError
from tinylarge.registry import Registry

#: Bytes reserved for the stack (the kernels need well under 200 B; the rest is headroom).
STACK_BYTES = 1024
#: Optimization and section flags of every firmware build.
COMMON_FLAGS = (
    "-std=c99", "-Os", "-ffunction-sections", "-fdata-sections", "-Wall", "-Wextra", "-mthumb",
)  # fmt: skip
FIRMWARE_FILES = ("tl_startup.c", "tl_semihost.h", "tl_main_semihost.c", "mps2.ld")
INSTALL_HINT = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


@dataclass(frozen=True)
class Target:
    """A Cortex-M core: its compiler flags and the QEMU board that runs it (if any)."""

    name: str
    cpu_flags: tuple[str, ...]
    qemu_machine: str | None


TARGETS: Registry[Target] = Registry("firmware target")
for _t in (
    Target("cortex-m4", ("-mcpu=cortex-m4", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"), "mps2-an386"),
    Target("cortex-m7", ("-mcpu=cortex-m7", "-mfpu=fpv5-d16", "-mfloat-abi=hard"), "mps2-an500"),
    Target("cortex-m33", ("-mcpu=cortex-m33", "-mfpu=fpv5-sp-d16", "-mfloat-abi=hard"), None),
):
    TARGETS.add(_t.name, _t)


@dataclass(frozen=True)
class FirmwareImage:
    """A linked firmware image and its sizes (bytes) read from the ELF sections."""

    elf: Path
    target: str
    sections: dict[str, int]

    @property
    def flash_bytes(self) -> int:
        s = self.sections
        return s.get(".text", 0) + s.get(".rodata", 0) + s.get(".ARM.exidx", 0) + s.get(".data", 0)

    @property
    def ram_bytes(self) -> int:
        s = self.sections
        return s.get(".data", 0) + s.get(".bss", 0) + s.get(".stack", 0)

    def to_dict(self) -> dict[str, object]:
        return {
            "target": self.target,
            "elf": str(self.elf),
            "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "sections": dict(self.sections),
        }


def missing_tools(*, qemu: bool = False) -> str | None:
    """Why firmware cannot be built (or run, with ``qemu``) here, or ``None`` if it can."""
    tools = ["arm-none-eabi-gcc", "arm-none-eabi-size"] + (["qemu-system-arm"] if qemu else [])
    absent = [t for t in tools if shutil.which(t) is None]
    if absent:
        return f"{', '.join(absent)} not installed ({INSTALL_HINT})"
    return None


def _run(cmd: list[str], *, cwd: Path | None = None, timeout_s: float = 120) -> str:
    done = subprocess.run(
        cmd, capture_output=True, text=True, check=False, cwd=cwd, timeout=timeout_s
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def build_firmware(source: CSource, target: str, out_dir: Path) -> FirmwareImage:
    """Compile and link ``source`` with the semihosting harness for ``target``."""
    spec = TARGETS[target]
    reason = missing_tools()
    if reason:
        raise TinylargeError(f"cannot build firmware: {reason}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in FIRMWARE_FILES:
        text = resources.files("tinylarge.compress.csource").joinpath(name).read_text()
        (out_dir / name).write_text(text.replace("tl_model", source.prefix).replace(
            "TL_MODEL", source.prefix.upper()))  # fmt: skip
    elf = out_dir / f"{source.prefix}-{target}.elf"
    cmd = [
        "arm-none-eabi-gcc", *COMMON_FLAGS, *spec.cpu_flags,
        f"-I{source.directory}", f"-I{out_dir}",
        *(str(p) for p in source.c_files),
        str(out_dir / "tl_startup.c"), str(out_dir / "tl_main_semihost.c"),
        "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
        f"-Wl,--defsym=STACK_BYTES={STACK_BYTES}", "-Wl,--gc-sections",
        f"-Wl,-Map={elf.with_suffix('.map')}", "-T", str(out_dir / "mps2.ld"), "-o", str(elf),
    ]  # fmt: skip
    _run(cmd)
    return FirmwareImage(elf=elf, target=target, sections=elf_sections(elf))


_NOT_LOADED = (".debug", ".comment", ".ARM.attributes", ".stab", ".symtab", ".strtab")


def elf_sections(elf: Path) -> dict[str, int]:
    """Sizes of the allocated sections of ``elf`` (``arm-none-eabi-size -A``)."""
    sections: dict[str, int] = {}
    for line in _run(["arm-none-eabi-size", "-A", "-d", str(elf)]).splitlines():
        parts = line.split()
        loaded = len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit()
        if loaded and not parts[0].startswith(_NOT_LOADED) and int(parts[1]):
            sections[parts[0]] = int(parts[1])
    return sections


def run_qemu(
    image: FirmwareImage, inputs: np.ndarray, *, output_bytes: int, timeout_s: float = 120
) -> np.ndarray:
    """int8 outputs ``(N, output_bytes)`` of the firmware run in QEMU on ``inputs`` (int8)."""
    spec = TARGETS[image.target]
    if spec.qemu_machine is None:
        raise TinylargeError(
            f"no QEMU board for {image.target}; run one of "
            f"{', '.join(n for n in sorted(TARGETS) if TARGETS[n].qemu_machine)}"
        )
    reason = missing_tools(qemu=True)
    if reason:
        raise TinylargeError(f"cannot run firmware: {reason}")
    x = np.ascontiguousarray(inputs, dtype=np.int8)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "tl_inputs.bin").write_bytes(x.tobytes())
        _run(
            [
                "qemu-system-arm", "-M", spec.qemu_machine, "-nographic", "-monitor", "none",
                "-serial", "none", "-semihosting-config", "enable=on,target=native",
                "-kernel", str(image.elf.resolve()),
            ],
            cwd=work,
            timeout_s=timeout_s,
        )  # fmt: skip
        out = np.frombuffer((work / "tl_outputs.bin").read_bytes(), dtype=np.int8)
    if out.size != len(x) * output_bytes:
        raise RuntimeError(f"firmware wrote {out.size} bytes for {len(x)} inputs")
    return out.reshape(len(x), output_bytes)


def toolchain_version() -> str:
    """First line of ``arm-none-eabi-gcc --version``."""
    return _run(["arm-none-eabi-gcc", "--version"]).splitlines()[0]
