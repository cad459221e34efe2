"""The fleet planner: demand -> MIG layouts -> mig-parted config and density report."""
