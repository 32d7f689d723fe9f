/** The shop's checkout: answers `GET /` after calling `payments` (`PAYMENTS_URL`). */
import { runShopService } from "../lib/service";
import { shopServices } from "../lib/topology";

runShopService(shopServices.checkout);
