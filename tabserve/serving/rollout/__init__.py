"""Rollout: the versions held and their roles, the champion's switch, shadow scoring and canary."""
