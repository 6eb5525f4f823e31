"""Where the commits of :mod:`.commit` keep their journal: one document per commit in flight, in FiftyOne's database.

A journal entry is written before a commit changes anything and dropped when it ends; one left by a killed process
tells the next call's repair what to finish or undo. Ended entries a clone may have copied half-way are kept a while
(:data:`SETTLED`, :mod:`.commit_clones`).
"""
#: the collection of the journal entries
JOURNAL = "ood_plugin_commits"
#: ended journals a clone may have copied half-way: each a killed process left (as its repair settled it), and
#: each that ended while another dataset held its temporary names (a clone made mid-commit): :mod:`.commit_clones`
SETTLED = "ood_plugin_commits_settled"
#: days a settled journal is kept for a clone that copied the dataset's temporary fields
SETTLED_DAYS = 90


def journal(name=JOURNAL):
    """The database collection ``name`` of FiftyOne's database (default: the commit journal)."""
    import fiftyone.core.odm as foo

    return foo.get_db_conn()[name]


def in_flight(dataset, path):
    """Whether a commit that writes ``path`` is in progress (or was left by a killed process)."""
    return journal().find_one({"dataset_id": str(dataset._doc.id), "targets.target": path}) is not None
