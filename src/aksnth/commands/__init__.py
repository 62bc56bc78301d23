"""The subcommands' front-ends: each module's ``main(argv) -> int`` parses its own flags and runs it.

- ``readiness``: would these nodes drain if Azure evicted them now? (:mod:`aksnth.kube.readiness`);
- ``render_template``: render the payload templates with sample data (:mod:`aksnth.notify.template`).
"""
