import { SnapshotCache } from "../../../runtime/routing/xds";
import { xdsCacheConformance } from "../../helpers/xds-cache-conformance";

xdsCacheConformance("SnapshotCache", () => new SnapshotCache());
