"""The SimPy discrete-event simulation of patients walking the pathway, and the specialist clinic they queue for;
writes the flat event log. Imports population, model and inputs, never scenario, analysis or anything above.
"""
