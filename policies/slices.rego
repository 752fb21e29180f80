# Data governance of the state's slices (its top-level keys) and of the context and memory agents
# exchange: who may read a slice, where an agent may write, payload sizes, which specialists may
# register. Settings: slices.json.
package cmo.policies.slices

import rego.v1

settings := data.settings.slices

# -- reads: a restricted slice only for its roles, PII only for admins ----------------------------

deny_step_before contains {"rule": "restricted_read", "reason": reason} if {
	some slice in input.state_keys
	roles := settings.readers[slice]
	not _any_in(input.principal.roles, roles)
	reason := concat("", ["slice ", slice, " is readable by ", _listed(roles), " only"])
}

deny_step_before contains {"rule": "pii_admin_only", "reason": reason} if {
	some slice in input.state_keys
	slice in settings.pii_slices
	not settings.admin_role in input.principal.roles
	reason := sprintf("slice %s holds personal data: readable by %s only", [slice, settings.admin_role])
}

deny_a2a_receive contains {"rule": "restricted_read", "reason": reason} if {
	input.meta.type == "ContextRequest"
	some key in input.payload.keys
	roles := settings.readers[_slice(key)]
	not _any_in(_sender_roles, roles)
	reason := concat("", [input.meta.from.id, " asked for ", key, ", readable by ", _listed(roles), " only"])
}

deny_a2a_receive contains {"rule": "pii_admin_only", "reason": reason} if {
	input.meta.type == "ContextRequest"
	some key in input.payload.keys
	_slice(key) in settings.pii_slices
	not settings.admin_role in _sender_roles
	reason := sprintf("%s asked for %s, personal data: readable by %s only", [input.meta.from.id, key, settings.admin_role])
}

# -- writes: an agent with a write scope writes only under its prefixes ---------------------------

deny_a2a_receive contains {"rule": "write_scope", "reason": reason} if {
	input.meta.type == "MemoryEvent"
	some role in _sender_roles
	prefixes := settings.writers[role]
	not _under_any(input.payload.key, prefixes)
	reason := concat("", [input.meta.from.id, " may write only under ", _listed(prefixes), ", not ", input.payload.key])
}

deny_step_after contains {"rule": "write_scope", "reason": reason} if {
	some role in input.principal.roles
	prefixes := settings.writers[role]
	some key in input.output_keys
	not _under_any(key, prefixes)
	reason := concat("", ["a ", role, " step may write only under ", _listed(prefixes), ", not ", key])
}

# -- sizes -----------------------------------------------------------------------------------------

deny_step_after contains {"rule": "max_payload", "reason": reason} if {
	size := max([input.state_bytes, input.output_bytes])
	size > settings.max_payload_bytes
	reason := sprintf("the step's state or output is %d bytes, above %d", [size, settings.max_payload_bytes])
}

deny_a2a_receive contains {"rule": "max_payload", "reason": reason} if {
	input.size > settings.max_payload_bytes
	reason := sprintf("the message is %d bytes, above %d", [input.size, settings.max_payload_bytes])
}

# -- specialists: registered with a version, capabilities from the list, a known name -------------

deny_registration contains {"rule": "specialist_version", "reason": reason} if {
	input.agent.kind == "specialist"
	not regex.match(`^[0-9]+\.[0-9]+(\.[0-9]+)?([.+-][0-9A-Za-z.]+)?$`, input.agent.version)
	reason := sprintf("specialist %s has version %s, not MAJOR.MINOR[.PATCH]", [input.agent.name, input.agent.version])
}

deny_registration contains {"rule": "specialist_capabilities", "reason": reason} if {
	input.agent.kind == "specialist"
	count(input.agent.capabilities) == 0
	reason := sprintf("specialist %s registers no capability", [input.agent.name])
}

deny_registration contains {"rule": "specialist_capabilities", "reason": reason} if {
	input.agent.kind == "specialist"
	some capability in input.agent.capabilities
	not _under_any(capability, settings.specialist_capabilities)
	reason := concat("", ["specialist ", input.agent.name, " may not offer ", capability, " (allowed: ", _listed(settings.specialist_capabilities), ")"])
}

# -- helpers ---------------------------------------------------------------------------------------

_sender_roles := array.concat(input.sender.roles, [input.meta.from.id])

_slice(key) := split(key, "/")[0]

# Joined with concat, never inside sprintf: the interpreter breaks a computed string given to
# sprintf's %s (the golden tests would show it).
_listed(names) := concat(", ", names)

_any_in(have, wanted) if {
	some role in have
	role in wanted
}

# `healing/*` covers `healing/selectors`; `*` covers everything; anything else only itself.
_under_any(key, patterns) if {
	some pattern in patterns
	_under(key, pattern)
}

_under(_, "*")

_under(key, pattern) if key == pattern

_under(key, pattern) if {
	endswith(pattern, "*")
	startswith(key, trim_suffix(pattern, "*"))
}
