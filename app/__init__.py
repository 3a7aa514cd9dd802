"""The Streamlit app, installed as ``pplab._app``; streamlit runs ``lab.py`` as a script.

``pplab lab`` finds it through ``pplab.runs.resources.app_entry()``.
"""
