"""The guest: what runs inside a sandbox's container, copied flat to /opt/toolserver by the image build.

`sbxd.py` (the daemon) and `sbxkernel.py` (the kernel launcher) run as scripts with the image's Python, so the
`sbxd_*` modules import each other by their plain names and never this project. The host imports only
`sbxd_output`, which imports nothing of the guest, as `sandbox._guest.sbxd_output` (through `sandbox._output`).
"""
