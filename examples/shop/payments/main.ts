/** The shop's last hop: answers `GET /` with what it received and calls nobody. */
import { runShopService } from "../lib/service";
import { shopServices } from "../lib/topology";

runShopService(shopServices.payments);
