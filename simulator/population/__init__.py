"""Who the patients are and when they come: cohort specifications and synthetic cohorts, open populations'
arrivals. Imports only simulator.model and simulator.inputs.
"""
