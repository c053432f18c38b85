// Package service holds what the small servers under cmd/ (router,
// router-otel, fakellm) share: the main that logs a failed run and exits,
// and serving HTTP until a signal with a bounded graceful shutdown. It
// carries no tracing code (the traced router's main imports it) and logs
// only through the logger its caller hands it.
package service
