"""After promotion: drift of the served inputs and scores against a version's reference profile."""
