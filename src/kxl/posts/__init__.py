"""Stage 2, posts: the selected post list (docs/formats.md section 2).

`kxl.posts.select.select_posts` is the library entry point; `kxl select-posts` its CLI.
"""
