"""What each attack sends, against hand-built updates and values worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinylarge.errors import TinylargeError
from tinylarge.security.attacks import (
    DATA_ATTACKS,
    UPDATE_ATTACKS,
    alie_z,
    backdoor_success,
    check_options,
    make_data_attack,
    make_update_attack,
    most_spread,
    stamp_trigger,
)

RNG = np.random.default_rng

# Three honest updates, two coordinates; by hand: mean (2, 10), sample std (ddof 1) (1, 6).
HONEST = np.array([[1.0, 4.0], [2.0, 10.0], [3.0, 16.0]])
OWN = np.array([[0.5, -1.0], [2.0, 3.0]])


def test_sign_flip_sends_minus_scale_times_own() -> None:
    sent = make_update_attack("sign-flip", {"scale": 3.0})(HONEST, OWN, num_byzantine=2, rng=RNG(0))
    assert sent.tolist() == [[-1.5, 3.0], [-6.0, -9.0]]
    default = make_update_attack("sign-flip", {})(HONEST, OWN, num_byzantine=2, rng=RNG(0))
    assert default.tolist() == [[-0.5, 1.0], [-2.0, -3.0]]


def test_gaussian_has_the_asked_std_and_zero_mean() -> None:
    own = np.zeros((4, 50_000))
    sent = make_update_attack("gaussian", {"sigma": 2.5})(
        np.ones((3, own.shape[1])), own, num_byzantine=4, rng=RNG(7)
    )
    assert sent.shape == own.shape
    # 200,000 draws: the std's standard error is 2.5 / sqrt(2 * 200000) ~ 0.004; the mean's ~ 0.006
    assert abs(float(sent.std()) - 2.5) < 0.02
    assert abs(float(sent.mean())) < 0.03
    # independent per client: rows differ
    assert not np.allclose(sent[0], sent[1])


def test_alie_z_for_25_clients_5_byzantine_worked_by_hand() -> None:
    # Baruch et al. 2019, Algorithm 1: s = floor(25/2 + 1) - 5 = 13 - 5 = 8,
    # z = Phi^-1((25 - 8) / 25) = Phi^-1(0.68); a normal table gives 0.4677.
    assert alie_z(25, 5) == pytest.approx(0.4677, abs=5e-5)
    # epfml code (honest supporters only): Phi^-1((20 - 8) / 20) = Phi^-1(0.6) = 0.2533.
    assert alie_z(25, 5, rule="honest") == pytest.approx(0.2533, abs=5e-5)


def test_alie_sends_mean_minus_z_std_per_coordinate() -> None:
    sent = make_update_attack("alie", {"z": 1.5})(HONEST, OWN, num_byzantine=2, rng=RNG(0))
    assert sent.tolist() == [[2.0 - 1.5 * 1.0, 10.0 - 1.5 * 6.0]] * 2
    # without z: n = 3 honest + 2 = 5, f = 2: s = floor(3.5) - 2 = 1, z = Phi^-1(4/5) = 0.8416
    sent = make_update_attack("alie", {})(HONEST, OWN, num_byzantine=2, rng=RNG(0))
    np.testing.assert_allclose(sent[0], [2.0 - 0.8416212 * 1.0, 10.0 - 0.8416212 * 6.0], rtol=1e-6)


def test_ipm_sends_minus_epsilon_times_honest_mean() -> None:
    sent = make_update_attack("ipm", {"epsilon": 0.5})(HONEST, OWN, num_byzantine=2, rng=RNG(0))
    assert sent.tolist() == [[-1.0, -5.0], [-1.0, -5.0]]
    default = make_update_attack("ipm", {})(HONEST, OWN[:1], num_byzantine=1, rng=RNG(0))
    np.testing.assert_allclose(default, [[-0.2, -1.0]])


def test_mimic_copies_one_honest_row_and_keeps_it() -> None:
    attack = make_update_attack("mimic", {"choose": "random"})
    first = attack(HONEST, OWN, num_byzantine=2, rng=RNG(3))
    rows = [r.tolist() for r in HONEST]
    assert first[0].tolist() in rows
    assert first[1].tolist() == first[0].tolist()
    # next round, same clients in the same order: the same index
    chosen = rows.index(first[0].tolist())
    again = attack(HONEST * 10, OWN, num_byzantine=2, rng=RNG(99))
    assert again[0].tolist() == (HONEST[chosen] * 10).tolist()
    fixed = make_update_attack("mimic", {"target": 2})(HONEST, OWN, num_byzantine=2, rng=RNG(0))
    assert fixed.tolist() == [[3.0, 16.0], [3.0, 16.0]]


def test_mimic_by_default_copies_the_update_farthest_along_the_top_direction() -> None:
    # honest rows spread along (1, 1); row 3 is the farthest out on that axis (not the
    # largest norm: row 4 is, but sideways, where the spread is small)
    honest = np.array([[0.0, 0.0], [1.0, 1.2], [-1.0, -0.8], [3.0, 3.1], [0.5, -1.5]])
    assert most_spread(honest) == 3
    sent = make_update_attack("mimic", {})(honest, OWN, num_byzantine=2, rng=RNG(0))
    assert sent.tolist() == [[3.0, 3.1], [3.0, 3.1]]
    assert most_spread(np.ones((4, 3))) == 0  # no spread: the first


def test_update_attacks_keep_own_dtype_and_shape() -> None:
    own = OWN.astype(np.float32)
    for name in UPDATE_ATTACKS:
        sent = make_update_attack(name, {})(HONEST, own, num_byzantine=2, rng=RNG(0))
        assert sent.shape == own.shape, name
        assert sent.dtype == np.float32, name


def test_label_flip_maps_y_to_9_minus_y() -> None:
    attack = make_data_attack("label-flip", {}, num_classes=10, input_shape=(3,))
    x = RNG(0).normal(size=(10, 3))
    y = np.arange(10)
    x2, y2 = attack.poison(x, y, rng=RNG(0))
    assert y2.tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert np.array_equal(x2, x)
    assert attack.boost == 1.0
    assert y.tolist() == list(range(10))  # input untouched
    assert make_data_attack("label-flip", {"boost": 4}, num_classes=10, input_shape=(3,)).boost == 4


def _checker_corner(lo: float, hi: float) -> np.ndarray:
    """The 4 x 4 bottom-right trigger written out: the corner pixel high, then alternating."""
    return np.array(
        [
            [hi, lo, hi, lo],
            [lo, hi, lo, hi],
            [hi, lo, hi, lo],
            [lo, hi, lo, hi],
        ]
    )


def test_stamp_trigger_sets_exactly_the_corner_checkerboard() -> None:
    x = RNG(1).uniform(-1, 1, size=(2, 1, 7, 6)).astype(np.float32)
    out = stamp_trigger(x, input_shape=(1, 7, 6), high=5.0, low=-5.0)
    expected = x.copy()
    expected[:, 0, 3:, 2:] = _checker_corner(-5.0, 5.0)
    assert np.array_equal(out, expected)
    assert out[0, 0, 6, 5] == 5.0  # the corner is high
    # defaults: the data's own extremes
    auto = stamp_trigger(x, input_shape=(1, 7, 6))
    assert auto[1, 0, 6, 5] == x.max()
    assert auto[1, 0, 6, 4] == x.min()


def test_stamp_trigger_on_tabular_inputs_sets_the_last_four_features() -> None:
    x = np.zeros((3, 10))
    out = stamp_trigger(x, input_shape=(10,), high=9.0, low=-9.0)
    assert out[:, :6].tolist() == [[0.0] * 6] * 3
    assert out[:, 6:].tolist() == [[-9.0, 9.0, -9.0, 9.0]] * 3


def test_backdoor_stamps_the_chosen_share_and_relabels_only_them() -> None:
    n = 40
    x = RNG(2).uniform(-1, 1, size=(n, 1, 8, 8)).astype(np.float32)
    y = np.full(n, 3)
    attack = make_data_attack(
        "backdoor",
        {"poison_fraction": 0.25, "target_label": 7, "trigger_high": 2.0, "trigger_low": -2.0},
        num_classes=10,
        input_shape=(1, 8, 8),
    )
    x2, y2 = attack.poison(x, y, rng=RNG(5))
    changed = np.flatnonzero(np.any(x2 != x, axis=(1, 2, 3)))
    assert len(changed) == 10  # 0.25 * 40
    assert np.flatnonzero(y2 == 7).tolist() == changed.tolist()
    assert np.all(y2[y2 != 7] == 3)
    # poisoned inputs differ from the originals exactly on the 16 trigger pixels
    stamped = x[changed].copy()
    stamped[:, 0, 4:, 4:] = _checker_corner(-2.0, 2.0)
    assert np.array_equal(x2[changed], stamped)
    untouched = np.setdiff1d(np.arange(n), changed)
    assert np.array_equal(x2[untouched], x[untouched])
    assert np.all(y == 3)  # inputs untouched


def test_backdoor_boost_is_n_over_eta_unless_given() -> None:
    shape = (1, 4, 4)
    assert (
        make_data_attack("backdoor", {}, num_classes=10, input_shape=shape, num_clients=25).boost
        == 25.0
    )
    halved = make_data_attack(
        "backdoor", {"server_lr": 0.5}, num_classes=10, input_shape=shape, num_clients=10
    )
    assert halved.boost == 20.0
    given = make_data_attack("backdoor", {"boost": 3}, num_classes=10, input_shape=shape)
    assert given.boost == 3.0
    with pytest.raises(ValueError, match="num_clients"):
        _ = make_data_attack("backdoor", {}, num_classes=10, input_shape=shape).boost


def test_backdoor_success_of_always_target_is_one_and_of_trigger_blind_is_zero() -> None:
    shape = (1, 6, 6)
    x = RNG(4).normal(size=(30, *shape)).astype(np.float32)
    y = np.arange(30) % 10
    target = 2

    def always_target(inputs: np.ndarray) -> np.ndarray:
        return np.full(len(inputs), target)

    # ignores the trigger pixels, predicts from the top-left pixel: never the target here
    def blind(inputs: np.ndarray) -> np.ndarray:
        return np.where(inputs[:, 0, 0, 0] > 0, 0, 1)

    # sees the trigger: predicts the target when the corner pixel is the data's max
    def triggered(inputs: np.ndarray) -> np.ndarray:
        return np.where(inputs[:, 0, 5, 5] == x.max(), target, 0)

    kw = {"target_label": target, "input_shape": shape}
    assert backdoor_success(always_target, x, y, **kw) == 1.0
    assert backdoor_success(blind, x, y, **kw) == 0.0
    assert backdoor_success(triggered, x, y, **kw) == 1.0
    # only inputs outside the target class count: a model wrong on exactly those is 0
    seen: list[int] = []

    def count(inputs: np.ndarray) -> np.ndarray:
        seen.append(len(inputs))
        return np.zeros(len(inputs), dtype=int)

    backdoor_success(count, x, y, **kw)
    assert seen == [27]


@pytest.mark.parametrize(
    ("kind", "name", "options", "n", "f", "message"),
    [
        (
            "update",
            "sign-flop",
            {},
            10,
            2,
            "unknown update attack 'sign-flop'; known: alie, gaussian, ipm, mimic, sign-flip",
        ),
        (
            "any",
            "flip",
            {},
            10,
            2,
            "known: alie, backdoor, gaussian, ipm, label-flip, mimic, sign-flip",
        ),
        ("update", "gaussian", {"sigma": -0.1}, 10, 2, "option sigma must be >= 0"),
        ("update", "gaussian", {"sigma": "big"}, 10, 2, "option sigma must be a finite number"),
        ("update", "ipm", {"eps": 1.0}, 10, 2, "unknown option 'eps'; known: epsilon"),
        ("update", "ipm", {"epsilon": 0}, 10, 2, "option epsilon must be > 0"),
        ("update", "sign-flip", {"scale": math.inf}, 10, 2, "option scale must be a finite number"),
        ("update", "alie", {}, 10, 6, "needs f <= n/2"),
        ("update", "alie", {"z_rule": "mine"}, 10, 2, "z_rule must be one of paper, honest"),
        ("update", "mimic", {"target": 8}, 10, 2, "option target must be < 8"),
        ("update", "mimic", {"choose": "best"}, 10, 2, "choose must be one of variance, random"),
        ("update", "ipm", {}, 4, 4, "needs at least one honest client"),
        ("update", "sign-flip", {}, 4, 5, "malicious clients must be between 1 and the 4"),
        (
            "data",
            "backdoor",
            {"poison_fraction": 0.0},
            10,
            2,
            "poison_fraction must be > 0 and <= 1",
        ),
        (
            "data",
            "backdoor",
            {"poison_fraction": 1.5},
            10,
            2,
            "poison_fraction must be > 0 and <= 1",
        ),
        ("data", "backdoor", {"target_label": 10}, 10, 2, "target_label must be >= 0 and < 10"),
        ("data", "backdoor", {"target_label": -1}, 10, 2, "target_label must be >= 0"),
        ("data", "backdoor", {"boost": 0}, 10, 2, "option boost must be > 0"),
        ("data", "label-flip", {"to": 1}, 10, 2, "unknown option 'to'; known: boost"),
        ("data", "label-flip", {"boost": -2}, 10, 2, "option boost must be > 0"),
        ("data", "ipm", {}, 10, 2, "unknown data attack 'ipm'"),
    ],
)
def test_check_options_refuses_in_one_line(
    kind: str, name: str, options: dict[str, object], n: int, f: int, message: str
) -> None:
    with pytest.raises(TinylargeError) as err:
        check_options(kind, name, options, num_clients=n, num_byzantine=f, num_classes=10)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_check_options_accepts_the_defaults() -> None:
    for name in UPDATE_ATTACKS:
        check_options("update", name, {}, num_clients=25, num_byzantine=5)
    for name in DATA_ATTACKS:
        check_options("data", name, {}, num_clients=25, num_byzantine=5, num_classes=10)
    check_options("update", "alie", {"z": 1.0}, num_clients=10, num_byzantine=6)
