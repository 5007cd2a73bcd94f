"""The device layer: vendor plug-ins (vendors/), what a run asks of the device outside the engines
(accel.py), memory, power and energy over a run, and which machine and software made a result."""
