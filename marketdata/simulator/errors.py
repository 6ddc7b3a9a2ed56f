"""Binance error answers: ``{"code": <negative int>, "msg": "..."}`` with an HTTP status."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg}


def missing(param: str) -> ApiError:
    return ApiError(-1102, f"Mandatory parameter '{param}' was not sent, was empty/null, or malformed.")


BAD_API_KEY = (-2015, "Invalid API-key, IP, or permissions for action.")
BAD_SIGNATURE = (-1022, "Signature for this request is not valid.")
BAD_TIMESTAMP = (-1021, "Timestamp for this request is outside of the recvWindow.")
AHEAD_TIMESTAMP = (-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
BAD_RECV_WINDOW = (-1131, "recvWindow must be less than 60000")
BAD_SYMBOL = (-1121, "Invalid symbol.")
PRECISION = (-1111, "Precision is over the maximum defined for this asset.")
MARGIN = (-2019, "Margin is insufficient.")
REDUCE_ONLY = (-2022, "ReduceOnly Order is rejected.")
NO_SUCH_ORDER = (-2013, "Order does not exist.")
UNKNOWN_ORDER = (-2011, "Unknown order sent.")
LISTEN_KEY = (-1125, "This listenKey does not exist. Please use `POST /fapi/v1/listenKey` to recreate `listenKey`")
MAX_POSITION = (-2027, "Exceeded the maximum allowable position at current leverage.")
WOULD_TRIGGER = (-2021, "Order would immediately trigger.")
POSITION_SIDE = (-4061, "Order's position side does not match user's setting.")
TOO_MANY = (
    -1003,
    "Too many requests; current limit is 2400 requests per minute. Please use the websocket for live "
    "updates to avoid polling the API.",
)
BANNED = (
    -1003,
    "Way too many requests; IP banned until {until}. Please use the websocket for live updates to avoid bans.",
)
UNKNOWN_STATUS = (-1000, "Unknown error, please check your request or try again later.")


def api_error(pair: tuple[int, str], status: int = 400) -> ApiError:
    return ApiError(pair[0], pair[1], status)
