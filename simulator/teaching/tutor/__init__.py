"""The counterfactual case tutor: the options and their verdicts (``options``), the session that replays the
trainee's choices with the same luck (``session``) and the terminal front end (``terminal``). Part of
simulator.teaching: never imports regression or cli.
"""
