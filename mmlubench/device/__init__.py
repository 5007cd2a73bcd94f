"""The device layer: one `Device` per run (device.py) over the vendor plug-ins (vendors/), accel.py,
memory, power and clock samples, energy per pass, and the environment of a result."""
