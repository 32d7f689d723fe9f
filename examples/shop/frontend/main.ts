/** The shop's entry service: answers `GET /` after calling `checkout` (`CHECKOUT_URL`). */
import { runShopService } from "../lib/service";
import { shopServices } from "../lib/topology";

runShopService(shopServices.frontend);
