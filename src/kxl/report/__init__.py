"""The run report: one self-contained HTML page of what a run did (docs/formats.md section 13).

It reads only the stages' artifacts and records, never recomputes a stage, and reads the big
tables as aggregates (polars lazy scans of a few columns), so a 5.2M-post run costs seconds and
bounded memory. Every part degrades on its own: a missing or inconsistent artifact becomes a
notice on the page and one line on stderr, never a failed page.

- `inputs`: where each artifact lives and the `Missing` notice; `svg`: plots as inline SVG (no
  script library, no network); `funnel`, `buckets`, `training`, `provenance`: one section
  each; `page`: the HTML; `build`: the whole report and the live training view.
"""
