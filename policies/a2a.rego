# The wire gates: what may cross between agents. Settings: a2a.json.
package cmo.policies.a2a

import rego.v1

settings := data.settings.a2a

deny_a2a_send contains d if some d in _namespace_denials

deny_a2a_receive contains d if some d in _namespace_denials

_namespace_denials contains {"rule": "cross_tenant", "reason": reason} if {
	[input.meta.tenant, input.meta.project] != [input.topic.tenant, input.topic.project]
	reason := sprintf("a message of %s/%s on a topic of %s/%s", [input.meta.tenant, input.meta.project, input.topic.tenant, input.topic.project])
}

# The sender holds, in its capability token, what the message type needs.
deny_a2a_receive contains {"rule": "missing_capability", "reason": reason} if {
	some needed in settings.required_capabilities[input.meta.type]
	not _held(needed)
	reason := sprintf("a %s needs the capability %s, which %s does not hold", [input.meta.type, needed, input.meta.from.id])
}

deny_a2a_send contains d if some d in _size_denials

deny_a2a_receive contains d if some d in _size_denials

_size_denials contains {"rule": "max_size", "reason": reason} if {
	limit := object.get(settings.max_bytes, input.meta.type, settings.default_max_bytes)
	input.size > limit
	reason := sprintf("a %s of %d bytes is above its limit of %d", [input.meta.type, input.size, limit])
}

_held(needed) if {
	some held in input.sender.capabilities
	_grants(held, needed)
}

_grants("*", _)

_grants(held, needed) if held == needed

_grants(held, needed) if {
	endswith(held, ":*")
	startswith(needed, trim_suffix(held, "*"))
}

_grants(held, needed) if {
	endswith(held, "/*")
	startswith(needed, trim_suffix(held, "*"))
}
