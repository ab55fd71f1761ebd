"""一标三实 registry: standard addresses, buildings, rooms and residents tied to the map."""
