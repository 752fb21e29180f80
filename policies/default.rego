# The defaults every deployment starts from: what a run may be and do. Settings: default.json.
package cmo.policies.default

import rego.v1

settings := data.settings.default

deny_step_before contains {"rule": "run_id_format", "reason": reason} if {
	not regex.match(settings.run_id_pattern, input.run.id)
	reason := sprintf("run id %s does not match %s", [input.run.id, settings.run_id_pattern])
}

deny_step_before contains {"rule": "max_steps", "reason": reason} if {
	input.step.index >= settings.max_steps
	reason := sprintf("step %d is beyond the %d steps a run may take", [input.step.index, settings.max_steps])
}

deny_step_before contains {"rule": "blocked_graph", "reason": reason} if {
	input.graph.id in settings.blocked_graphs
	reason := sprintf("graph %s is blocked", [input.graph.id])
}

# A step that finished with an `error` in its state failed, whatever it returned.
deny_step_after contains {"rule": "step_error", "reason": reason} if {
	_reported(input.state.error)
	reason := sprintf("the step reported an error: %v", [input.state.error])
}

_reported(error) if {
	not error in {null, false, "", 0}
}
