"""Docket's machine-learning core: plain Python, no Django.

The live loop (learning/services/, learning/tasks.py) and the simulation (learning/ml/simulation.py)
both call these modules, so a strategy measured offline is the strategy that runs in production.
"""
