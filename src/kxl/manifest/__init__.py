"""Stage 3, manifest: every selected post kept or dropped with one reason (docs/formats.md 3).

`kxl.manifest.build.build_manifest` is the library entry point; `kxl build-manifest` its CLI.
"""
