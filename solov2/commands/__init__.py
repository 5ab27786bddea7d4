"""The `solov2` command's subcommands (train, predict, export, benchmark, visualize, zoo); see solov2.commands.main.

tools/*.py and demo/demo.py are thin wrappers over these modules, so both spellings run the same code.
"""
