"""The HakuBooru 0.0.2 SQLite schema, as the SQL text peewee 3 emits for its models.

HakuBooru (`hakubooru/dataset/db.py`) declares peewee models `Post`, `Tag`, `PostTagRelation`
and `LocalPost`; `load_db` creates them with `db.create_tables`. kxl must not depend on peewee
at run time, so the statements below are the exact DDL that peewee 3.19 writes for those
models (printed once from the models and checked against `sqlite_master` by the tests).
"""

from __future__ import annotations

from typing import Final

POST_DDL: Final = (
    'CREATE TABLE "post" ("id" INTEGER NOT NULL PRIMARY KEY, '
    '"created_at" VARCHAR(255) NOT NULL, "uploader_id" INTEGER NOT NULL, '
    '"source" VARCHAR(255) NOT NULL, "md5" VARCHAR(255), "parent_id" INTEGER, '
    '"has_children" INTEGER NOT NULL, "is_deleted" INTEGER NOT NULL, '
    '"is_banned" INTEGER NOT NULL, "pixiv_id" INTEGER, '
    '"has_active_children" INTEGER NOT NULL, "bit_flags" INTEGER NOT NULL, '
    '"has_large" INTEGER NOT NULL, "has_visible_children" INTEGER NOT NULL, '
    '"image_width" INTEGER NOT NULL, "image_height" INTEGER NOT NULL, '
    '"file_size" INTEGER NOT NULL, "file_ext" VARCHAR(255) NOT NULL, '
    '"rating" INTEGER NOT NULL, "score" INTEGER NOT NULL, "up_score" INTEGER NOT NULL, '
    '"down_score" INTEGER NOT NULL, "fav_count" INTEGER NOT NULL, '
    '"file_url" VARCHAR(255), "large_file_url" VARCHAR(255), "preview_file_url" VARCHAR(255))'
)
TAG_DDL: Final = (
    'CREATE TABLE "tag" ("id" INTEGER NOT NULL PRIMARY KEY, "name" VARCHAR(255) NOT NULL, '
    '"type" INTEGER NOT NULL, "popularity" INTEGER NOT NULL)'
)
RELATION_DDL: Final = (
    'CREATE TABLE "posttagrelation" ("id" INTEGER NOT NULL PRIMARY KEY, '
    '"post_id" INTEGER NOT NULL, "tag_id" INTEGER NOT NULL, '
    'FOREIGN KEY ("post_id") REFERENCES "post" ("id"), '
    'FOREIGN KEY ("tag_id") REFERENCES "tag" ("id"))'
)
LOCALPOST_DDL: Final = (
    'CREATE TABLE "localpost" ("id" INTEGER NOT NULL PRIMARY KEY, "filepath" VARCHAR(255), '
    '"latentpath" VARCHAR(255), "post_id" INTEGER NOT NULL, '
    'FOREIGN KEY ("post_id") REFERENCES "post" ("id"))'
)

# Tables first; indexes are separate so a bulk writer can build them after inserting rows.
TABLES: Final = {
    "post": POST_DDL,
    "tag": TAG_DDL,
    "posttagrelation": RELATION_DDL,
    "localpost": LOCALPOST_DDL,
}
INDEXES: Final = {
    "tag_name": 'CREATE UNIQUE INDEX "tag_name" ON "tag" ("name")',
    "posttagrelation_post_id": (
        'CREATE INDEX "posttagrelation_post_id" ON "posttagrelation" ("post_id")'
    ),
    "posttagrelation_tag_id": (
        'CREATE INDEX "posttagrelation_tag_id" ON "posttagrelation" ("tag_id")'
    ),
    "localpost_post_id": 'CREATE INDEX "localpost_post_id" ON "localpost" ("post_id")',
}

# Column order of `post` as declared (the order rows are inserted in).
POST_COLUMNS: Final = (
    "id", "created_at", "uploader_id", "source", "md5", "parent_id", "has_children",
    "is_deleted", "is_banned", "pixiv_id", "has_active_children", "bit_flags", "has_large",
    "has_visible_children", "image_width", "image_height", "file_size", "file_ext", "rating",
    "score", "up_score", "down_score", "fav_count", "file_url", "large_file_url",
    "preview_file_url",
)
TAG_COLUMNS: Final = ("id", "name", "type", "popularity")
RELATION_COLUMNS: Final = ("id", "post_id", "tag_id")

# HakuBooru's EnumField lists: the stored integer is the index in these tuples.
TAG_TYPES: Final = ("general", "artist", "character", "copyright", "meta")
RATINGS: Final = ("general", "sensitive", "questionable", "explicit")
GENERAL, ARTIST, CHARACTER, COPYRIGHT, META = range(5)

IMAGE_EXTS: Final = ("jpg", "jpeg", "png", "webp")
NON_IMAGE_EXTS: Final = ("gif", "mp4", "webm", "zip", "swf")
