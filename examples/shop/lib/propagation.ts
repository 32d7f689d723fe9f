/**
 * OpenTelemetry context propagation, set up the way an instrumented service sets it up: the W3C
 * Trace Context and W3C Baggage propagators behind the global propagation API, and an
 * AsyncLocalStorage context manager so the context extracted from a request is the active one in
 * everything that request's handler awaits, including the outgoing call that injects it again.
 * Nothing here knows what the baggage means: the services only carry it along.
 */
import {
  context,
  propagation,
  ROOT_CONTEXT,
  type Context,
  type TextMapGetter,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import {
  CompositePropagator,
  W3CBaggagePropagator,
  W3CTraceContextPropagator,
} from "@opentelemetry/core";

let installed = false;

/** Registers the W3C propagators and the AsyncLocalStorage context manager, once per process. */
export function installPropagation(): void {
  if (installed) return;
  installed = true;
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(
    new CompositePropagator({
      propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()],
    }),
  );
}

// Reads from a fetch `Headers`, so the incoming request's headers need no copying.
const headersGetter: TextMapGetter<Headers> = {
  get: (carrier, key) => carrier.get(key) ?? undefined,
  keys: (carrier) => [...carrier.keys()],
};

/** The OpenTelemetry context (trace parent, baggage) an incoming request carries. */
export function extractContext(headers: Headers): Context {
  return propagation.extract(ROOT_CONTEXT, headers, headersGetter);
}

/** Runs `fn` with `ctx` active, so calls made anywhere inside it carry `ctx` on. */
export function withContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

/** The propagation headers (`traceparent`, `tracestate`, `baggage`) of the active context. */
export function outgoingHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  propagation.inject(context.active(), headers);
  return headers;
}
