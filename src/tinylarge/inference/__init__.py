"""The math of collaborative inference: tiny-to-large cascade, early exits, split inference.

At inference time TinyML and LargeML serve together (Vu et al., "Integration
of TinyML and LargeML: A Survey of 6G and Beyond", https://arxiv.org/abs/2505.15854):
the device answers what it can and offloads the rest to a large model at the
edge or in the cloud, or runs the first layers and sends activations. This
package holds the pure math; the schemes that run it are in
:mod:`tinylarge.schemes` (``cascade``, ``early-exit``, ``split-inference``).

| module | what |
|---|---|
| ``calibration`` | temperature scaling, confidence scores, ECE |
| ``policy`` | exit thresholds for a target (accuracy, offload, energy); online adaptation |
| ``paths`` | per-request paths over device, link, edge, backhaul, cloud; their walk; figures |
| ``cascade`` | the tiny-to-large cascade's paths |
| ``early_exit`` | BranchyNet/DDNN multi-exit networks, their joint loss and tier placement |
| ``split`` | Neurosurgeon/DADS partition planner over a model's operator graph (cut only |
|  | where :mod:`tinylarge.models.cuts` allows) and the split execution |
| ``mincut`` | the max-flow/min-cut behind it |

See docs/collaborative_inference.md.
"""
