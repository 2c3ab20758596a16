"""Real servers the tests start on loopback (no mocks): Mosquitto, ..."""
