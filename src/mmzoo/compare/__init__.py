"""The parts of ``python -m mmzoo.leaderboard``: seed statistics, plots and the HTML page.

``mmzoo.leaderboard`` reads run directories and assembles the tables; the modules here
each do one thing with those tables and know nothing about where runs come from.
"""
