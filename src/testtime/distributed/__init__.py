"""Scale-out of sweeps on Ray."""
