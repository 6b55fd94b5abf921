from __future__ import annotations

from typing import Annotated

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from openmmp.kit.schemas import RequestModel, ResponseModel
from openmmp.kit.validators import Country, Email, HttpUrl, Phone


class CompanyFields(RequestModel):
    country: Country | None = None
    phone: Phone | None = None
    email: Email | None = None
    address: str | None = Field(default=None, max_length=500)
    website: HttpUrl | None = None
    industry: str | None = Field(default=None, max_length=100)


class OnboardCompany(CompanyFields):
    name: str = Field(min_length=1, max_length=200)


class OnboardAdmin(RequestModel):
    name: str = Field(min_length=1, max_length=200)
    email: Email
    phone: Phone | None = None


class OnboardRequest(RequestModel):
    company: OnboardCompany
    admin: OnboardAdmin


class OnboardResponse(ResponseModel):
    company_id: str = Field(description="The company's public id (the same UUID as companyPublicId).")
    company_public_id: str
    admin_user_id: str = Field(description="The admin user's public id.")
    api_key: str = Field(description="The company's first API key. Shown once.")


_NAME_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 200}


class UpdateCompanyProfileRequest(CompanyFields):
    # Optional but never null, and documented so: a company cannot lose its name (the column is NOT NULL).
    name: Annotated[str | None, WithJsonSchema(_NAME_SCHEMA)] = Field(
        default=None, min_length=1, max_length=200
    )

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: str | None) -> str:
        if value is None:
            raise ValueError("a company keeps its name: give a new one or leave name out")
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> UpdateCompanyProfileRequest:
        if not self.model_fields_set:
            raise ValueError("give at least one company field to change")
        return self


class UpdateCompanyProfileResponse(ResponseModel):
    public_id: str
    name: str
    country: str | None
    phone: str | None
    email: str | None
    address: str | None
    website: str | None
    industry: str | None
    status: int = Field(description="1 ACTIVE, 2 INACTIVE")
    kyc_status: int = Field(description="0 NONE, 1 PENDING, 2 APPROVED, 3 REJECTED")
    created_date: int
    updated_date: int
