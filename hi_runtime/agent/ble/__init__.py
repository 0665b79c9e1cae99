"""BLE offload path: the GATT service contract (spec), the stack-independent gateway logic (gateway),
a thin bleak layer for real radios (bleak_gateway) and a bumble layer plus a virtual device that behaves
as the firmware must (bumble_link, sim) for tests and simulation. See docs/ble.md."""
