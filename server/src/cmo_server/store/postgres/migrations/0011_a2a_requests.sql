-- A reply from an agent finds the run that asked by the request's message id: the step recorded
-- the request as an activity of kind 'a2a.request' named 'a2a.<message id>'. Partial, so that no
-- other activity pays for the index.
CREATE INDEX activities_a2a_requests ON activities (namespace, name) WHERE kind = 'a2a.request';
