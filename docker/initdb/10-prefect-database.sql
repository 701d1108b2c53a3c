-- The Prefect server keeps its state in a database of its own, next to Zorgpad's.
CREATE DATABASE prefect OWNER zorgpad;
