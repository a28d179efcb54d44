"""The words of the console's later screens (issue 21's remaining items), kept apart from
:mod:`.i18n` so that neither catalogue grows past the module size the house allows;
:mod:`.i18n` merges them into its two catalogues, keyed alike."""

from __future__ import annotations

ZH_MORE: dict[str, str] = {
    "classify.save_button": "保存为新版本",
    "classify.save_from": "保存时，平台从该数据集登记的数据源（{source}）重新读取数据，按此分类登记为新版本，与 sandbox dataset refresh 读取的是同一数据源；若数据源在 v{version} 之后有变动，新版本包含变动后的数据。",
    "classify.no_source": "该数据集是上传登记的，平台不保留可再次读取的数据源，因此这里不能保存：请用 sandbox dataset register {name} 数据文件 --classification 分类文件，或 API 的 POST /v1/datasets/upload，连同修改后的分类重新登记。",
    "classify.unchanged": "分类与数据都与 v{version} 相同，没有登记新版本。",
    "datasets.versions": "版本",
    "datasets.entity_key": "主体键",
}

EN_MORE: dict[str, str] = {
    "classify.save_button": "Save as a new version",
    "classify.save_from": "Saving reads the data again from the source this dataset was "
    "registered from ({source}), the one sandbox dataset refresh reads, and registers it with "
    "this classification as a new version; if the source changed since v{version}, the new "
    "version holds the changed data.",
    "classify.no_source": "This dataset was registered from an upload: the platform keeps no "
    "source it can read again, so it cannot be saved here. Register it again with the corrected "
    "classification: sandbox dataset register {name} DATA_FILE --classification FILE, or the "
    "API's POST /v1/datasets/upload.",
    "classify.unchanged": "The classification and the data are those of v{version}: no new "
    "version was registered.",
    "datasets.versions": "Versions",
    "datasets.entity_key": "entity key",
}
