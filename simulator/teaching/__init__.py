"""The educators' tools: narrated journeys, the counterfactual tutor, teaching cases, the clinical flowchart, the
developer diagram and the browser app. Never imports regression or cli.
"""
