"""MPEG-TS: packet alignment and join points, and the fan-out of one stream to many clients."""
