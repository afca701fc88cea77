"""Lets `python -m device_sim ...` run the command line."""

from device_sim.cli import main

main()
