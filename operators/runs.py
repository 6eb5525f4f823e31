"""Operator: list, inspect, rename and delete fiftyone-ood runs."""

import fiftyone.operators as foo
import fiftyone.operators.types as types

from . import _common as common

ACTIONS = ("list", "rename", "delete")


class ManageOODRuns(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="manage_ood_runs",
            label="OOD: manage runs",
            description="List, inspect, rename or delete fiftyone-ood runs (deleting removes their fields)",
            dynamic=True,
        )

    def resolve_input(self, ctx):
        from ood_core import fo_runs

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
        from ood_core import fo_runs

        p = ctx.params
        action = p.get("action", "list")
        dataset = ctx.dataset
        if action == "rename":
            fo_runs.rename_ood_run(dataset, p["run_key"], p["new_run_key"])
        elif action == "delete":
            fo_runs.delete_ood_run(dataset, p["run_key"], delete_fields=bool(p.get("delete_fields", True)))
            ctx.trigger("reload_dataset")
        runs = []
        for key in fo_runs.list_ood_runs(dataset):
            info = fo_runs.get_ood_run_info(dataset, key)
            runs.append({"run_key": key, "kind": info.get("kind"), "fields": info.get("fields"),
                         "timestamp": info.get("timestamp")})
        return {"runs": runs}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.list("runs", types.Object(), label="fiftyone-ood runs")
        return types.Property(outputs)

    def __call__(self, sample_collection, action="list", run_key=None, new_run_key=None, delete_fields=True):
        params = dict(action=action, run_key=run_key, new_run_key=new_run_key, delete_fields=delete_fields)
        return foo.execute_operator(self.uri, dict(view=sample_collection.view()), params=params)
