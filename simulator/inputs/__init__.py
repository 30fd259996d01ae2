"""Reading input files (YAML) into validated pydantic models, with errors naming the file, the field and the fix;
finding packaged cohorts, scenarios and trial cohorts by name. Imports nothing else of simulator.
"""
