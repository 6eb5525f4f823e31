"""Operator: list, inspect, rename and delete fiftyone-ood runs."""

import fiftyone.operators.types as types

from . import base as common
from .markdown import escape

ACTIONS = ("list", "rename", "delete")


class ManageOODRuns(common.OODOperator):
    name = "manage_ood_runs"
    label = "OOD: manage runs"
    description = ("List, inspect, rename or delete fiftyone-ood runs (deleting removes their fields)")
    icon = "manage_history"
    delegable = False
    positional_params = ("action", "run_key", "new_run_key")

    def resolve_input(self, ctx):
        from ood_core.fo import runs as fo_runs

        inputs = types.Object()
        runs = fo_runs.list_ood_runs(ctx.dataset)
        prop = common.enum_input(inputs, "action", ACTIONS, ctx, default="list", label="Action",
                                 view=types.RadioGroup())
        if prop.invalid:  # the inputs of an action the run does not know make no sense
            return types.Property(inputs, view=types.View(label=self.label))
        action = ctx.params.get("action") or "list"
        if action == "rename":  # an embeddings run's key is its field's name: it cannot be renamed
            runs = [k for k in runs if k not in fo_runs.list_ood_runs(ctx.dataset, kind="embeddings")]
        if action != "list":
            prop = common.add_field_choice(inputs, "run_key", runs, label="Run", description="A fiftyone-ood run")
            if not runs:
                prop.invalid = True
                prop.error_message = "this dataset has no fiftyone-ood runs"
            elif ctx.params.get("run_key") and ctx.params["run_key"] not in runs:  # deleted meanwhile, or typed
                common.invalidate(prop, f"run {ctx.params['run_key']!r} is not among this dataset's fiftyone-ood runs"
                                        f"{' that can be renamed' if action == 'rename' else ''} (deleted or renamed "
                                        "since the form opened?): pick one in the list")
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
            _delete_inputs(inputs, ctx, runs)
        return types.Property(inputs, view=types.View(label=self.label))

    def run(self, ctx):
        from ood_core.fo import run_admin
        from ood_core.fo import runs as fo_runs
        from ood_core.fo.run_admin import deleted_along, fields_to_delete

        p = ctx.params
        action = common.choice_param(p, "action", ACTIONS, "list")
        dataset = ctx.dataset
        report = None
        if action == "rename":
            run_admin.rename_ood_run(dataset, p["run_key"], p["new_run_key"])
            report = common.report(f"Run `{p['run_key']}` renamed to `{p['new_run_key']}`",
                                   [("fields", "unchanged")])
        elif action == "delete":
            delete_fields = common.flag_param(p, "delete_fields", True)
            fields = fields_to_delete(dataset, p["run_key"]) if delete_fields else []
            along = deleted_along(dataset, p["run_key"], delete_fields)
            if not common.flag_param(p, "confirm_delete", False):  # "no" from a Python call is no confirmation
                raise ValueError(
                    f"deleting run {p['run_key']!r} needs confirm_delete=True: it removes the run record"
                    + (f" and the fields {fields}" if fields else "") + "; tick the confirmation box")
            run_admin.delete_ood_run(dataset, p["run_key"], delete_fields=delete_fields)
            ctx.trigger("reload_dataset")
            report = common.report(f"Run `{p['run_key']}` deleted",
                                   [("fields deleted", ", ".join(f"`{f}`" for f in fields) or "none"),
                                    *((name, escape(value)) for name, value in along)])
        return {"runs": run_rows(dataset), "report": report or f"{len(fo_runs.list_ood_runs(dataset))} runs"}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("report", label="Result", view=types.MarkdownView(read_only=True))
        table = types.TableView()
        for key, label in RUN_COLUMNS:
            table.add_column(key, label=label)
        outputs.list("runs", types.Object(), label="fiftyone-ood runs", view=table)
        return types.Property(outputs, view=types.View(label=f"{self.label} (done)"))


def _delete_inputs(inputs, ctx, runs):
    """Delete: what goes (the run's fields, listed; the flags runs, tags and saved views that go with it) and a
    confirmation box that must be ticked."""
    from ood_core.fo.run_admin import deleted_along, fields_to_delete

    key = ctx.params.get("run_key")
    if key not in runs:
        return
    if common.bool_input(inputs, ctx, "delete_fields", default=True, label="Also delete the run's fields").invalid:
        return  # not a yes/no value: what would be deleted is not known
    delete_fields = common.flag_param(ctx.params, "delete_fields", True)
    fields = fields_to_delete(ctx.dataset, key) if delete_fields else []
    what = (f"the run record {key!r} and its fields: " + ", ".join(fields)) if fields else \
        f"the run record {key!r} (no fields)"
    along = "".join(f"; {name}: {value}" for name, value in deleted_along(ctx.dataset, key, bool(delete_fields)))
    inputs.view("delete_warning", types.Warning(label=f"This deletes {what}{along}. It cannot be undone."))
    confirm = common.bool_input(inputs, ctx, "confirm_delete", default=False, required=True,
                                label=f"Yes, delete {key!r}", view=types.CheckboxView())
    if not confirm.invalid and not ctx.params.get("confirm_delete"):
        common.invalidate(confirm, "tick the box to confirm the deletion")


#: (row key, column title) of the runs table
RUN_COLUMNS = (("run_key", "Run"), ("kind", "Kind"), ("fields", "Fields"), ("date", "Date"))


def run_rows(dataset):
    """One row per run of this plugin: key, kind, the fields it wrote, when it ran."""
    from ood_core.fo import runs as fo_runs
    from ood_core.fo.run_sync import one_look

    rows = []
    with one_look():  # one look at the runs for the listing and every record read below (not one per run)
        for key in fo_runs.list_ood_runs(dataset):
            info = fo_runs.get_ood_run_info(dataset, key)
            rows.append({"run_key": key, "kind": info.get("kind") or "",
                         "fields": ", ".join(info.get("fields") or []), "date": (info.get("timestamp") or "")[:19]})
    return rows
