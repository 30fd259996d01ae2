"""The clinical knowledge: the pathway state machine (one transitions definition), the guideline rules with their
seeds, the drug catalogue, the clinical model of response and adverse events, care after the first answer,
policies, safety rules, the guards, clinical overrides, the parameter audit, and the random streams the model
draws from. Imports only simulator.inputs.
"""
