"""What every part of the package uses: dtype names, process groups for sharded work."""
