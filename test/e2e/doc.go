// Package e2e is the black-box end-to-end suite: it builds cmd/brain (with -race) and
// cmd/mockllm once per run, starts them as processes on free loopback ports, and drives the
// brain the way Saperly does, through test/saperly: signed deliveries, NDJSON answers read
// line by line with their arrival times, barge-in by closing the connection, retries and
// broken rules. The model is the mockllm binary with scripted faults (POST /mock/script) and
// its record of what it was asked (GET /mock/requests). Whole calls replayed from
// test/testdata/calls/*.json sit beside hand-written tests of each protocol rule (PROTOCOL §1)
// and of the turn engine's answers to a slow, stalled, failing or broken model.
//
// Each test stops its brain with SIGTERM and checks that it exits with status 0 and without
// a data race report; on failure the brain's log (JSON, from its stderr) is printed.
//
// Run it with the rest of the tests, which starts a private redis-server and sets
// TEST_REDIS_URL:
//
//	make test              # or .ci/run, as CI does
//
// or on its own, against a Redis of your choice or, when TEST_REDIS_URL is unset, a private
// redis-server started by the suite (it must be on PATH; the suite fails, it does not skip,
// without one):
//
//	TEST_REDIS_URL=redis://127.0.0.1:6379/0 go test -count=1 ./test/e2e
//	go test -count=1 -run TestBargeIn -v ./test/e2e
//
// The brain's keys are per call, event and delivery UUID, so a shared Redis database is safe.
// The restart test always runs its own redis-server, which it kills and starts again. The
// cluster tests (cluster_test.go) share one 6-node Redis Cluster per run (test/rediscluster,
// which needs redis-cli too), and the rolling-restart test runs a real HAProxy (Debian package
// haproxy) in front of three brains.
//
// The package holds only tests; it imports test/saperly, test/mockllm and test/rediscluster,
// and of the brain the session package (to read a call's history back from Redis) and the
// agent package's demo tokenizer (to place scripted faults on token boundaries).
package e2e
