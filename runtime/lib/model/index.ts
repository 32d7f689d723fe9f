/**
 * The records the runtime keeps in etcd now live in `contract/model/` (both the runtime and the
 * components read them). This re-export keeps `runtime/node-agent/` and `runtime/routing/translate/`
 * compiling while they are edited in parallel; point their imports at `contract/model` and delete it.
 */
export * from "../../../contract/model";
