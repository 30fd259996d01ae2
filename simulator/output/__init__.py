"""Run, comparison, sweep and tornado folders (written atomically), the HTML reports and their figures. Never
imports teaching, regression or cli.
"""
