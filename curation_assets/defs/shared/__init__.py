"""What the domains share: resources, retry and placement policies, executors."""
