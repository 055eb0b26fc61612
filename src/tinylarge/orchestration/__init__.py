"""Planners: choose where to cut a model or what to offload, before running it.

A planner is registered under the scheme (or inference mode) it plans for and
turns a :class:`PlanRequest` into a :class:`Plan`: a table of candidate
points with their costs and the chosen one. ``tinylarge plan CONFIG`` looks
the planner up by ``scheme.name``.
"""

from tinylarge.orchestration.base import PLANNERS, Plan, PlanRequest, register_planner

__all__ = ["PLANNERS", "Plan", "PlanRequest", "register_planner"]
