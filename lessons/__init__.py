"""The lessons, installed as ``pplab._lessons``; each ``NN-name/`` folder is one lesson.

Code finds them through ``pplab.runs.resources.lessons_dir()``; learners open them here.
"""
