"""Operator: list, inspect, rename and delete fiftyone-ood runs."""

import fiftyone.operators.types as types

from . import base as common

ACTIONS = ("list", "rename", "delete")


class ManageOODRuns(common.OODOperator):
    name = "manage_ood_runs"
    label = "OOD: manage runs"
    description = ("List, inspect, rename or delete fiftyone-ood runs (deleting removes their fields)")
    delegable = False
    positional_params = ("action", "run_key", "new_run_key")

    def resolve_input(self, ctx):
        from ood_core.fo import runs as fo_runs

        inputs = types.Object()
        runs = fo_runs.list_ood_runs(ctx.dataset)
        inputs.enum("action", list(ACTIONS), default="list", label="Action", view=types.RadioGroup())
        action = ctx.params.get("action", "list")
        if action != "list":
            prop = common.add_field_choice(inputs, "run_key", runs, label="Run", description="A fiftyone-ood run")
            if not runs:
                prop.invalid = True
                prop.error_message = "this dataset has no fiftyone-ood runs"
        if action == "rename":
            prop = inputs.str("new_run_key", required=True, label="New run key")
            new = ctx.params.get("new_run_key")
            if new:
                try:
                    fo_runs.validate_key(new)
                    if ctx.dataset.has_run(new):
                        raise ValueError(f"run key {new!r} already exists")
                except ValueError as e:
                    prop.invalid = True
                    prop.error_message = str(e)
        if action == "delete":
            inputs.bool("delete_fields", default=True, label="Also delete the run's fields")
        return types.Property(inputs, view=types.View(label="Manage OOD runs"))

    def execute(self, ctx):
        from ood_core.fo import runs as fo_runs

        p = ctx.params
        action = p.get("action", "list")
        dataset = ctx.dataset
        if action == "rename":
            fo_runs.rename_ood_run(dataset, p["run_key"], p["new_run_key"])
        elif action == "delete":
            fo_runs.delete_ood_run(dataset, p["run_key"], delete_fields=bool(p.get("delete_fields", True)))
            ctx.trigger("reload_dataset")
        return {"runs": run_rows(dataset)}

    def resolve_output(self, ctx):
        outputs = types.Object()
        table = types.TableView()
        for key, label in RUN_COLUMNS:
            table.add_column(key, label=label)
        outputs.list("runs", types.Object(), label="fiftyone-ood runs", view=table)
        return types.Property(outputs)


#: (row key, column title) of the runs table
RUN_COLUMNS = (("run_key", "Run"), ("kind", "Kind"), ("fields", "Fields"), ("date", "Date"))


def run_rows(dataset):
    """One row per run of this plugin: key, kind, the fields it wrote, when it ran."""
    from ood_core.fo import runs as fo_runs

    rows = []
    for key in fo_runs.list_ood_runs(dataset):
        info = fo_runs.get_ood_run_info(dataset, key)
        rows.append({"run_key": key, "kind": info.get("kind") or "", "fields": ", ".join(info.get("fields") or []),
                     "date": (info.get("timestamp") or "")[:19]})
    return rows
