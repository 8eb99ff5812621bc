"""A Sphinx extension that drops repeated <script> entries from every HTML page.

Why: with Sphinx 7.4, sphinx-thebe 0.3.1 (loaded by Jupyter Book whatever the configuration) registers
its inline configuration script twice, so every page declares ``const THEBE_JS_URL`` twice and the
browser logs "Identifier 'THEBE_JS_URL' has already been declared". Keeping the first copy of each
identical script (same source, same attributes, whatever its priority; an inline script's file name
is None in one copy and "" in the other) fixes that and leaves the other assets alone.
"""

import os


def unique_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, kept = set(), []
    for script in context.get("script_files", []):
        key = (os.fspath(script.filename or ""), tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app) -> dict:
    app.connect("html-page-context", unique_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
