"""Baselines measured in the same run as Zorgpad's figures: the raw database floor and two naive designs."""
